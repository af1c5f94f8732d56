print("moerec")
